package cookies

import (
	"strings"
	"testing"
)

func collect(h string) []Pair {
	var out []Pair
	sc := NewScanner(h)
	for {
		p, ok := sc.Next()
		if !ok {
			return out
		}
		out = append(out, p)
	}
}

func TestScanner(t *testing.T) {
	tests := []struct {
		in   string
		want string // name=value|...
	}{
		{"", ""},
		{"a=1", "a=1"},
		{"a=1; b=2", "a=1|b=2"},
		{" a = 1 ;b=2;;  ; c", "a=1|b=2|c="},
		{"a=x=y", "a=x=y"},
		{"=novalue; b=2", "=novalue|b=2"},
		{`q="quoted"`, `q="quoted"`},
		{";;;", ""},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range collect(tt.in) {
			got = append(got, p.Name+"="+p.Value)
		}
		if strings.Join(got, "|") != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, strings.Join(got, "|"), tt.want)
		}
	}
}

func TestGet(t *testing.T) {
	h := `a=1; cg_consent="tok"; b=2; cg_consent=second`
	if v, ok := Get(h, "cg_consent"); !ok || v != "tok" {
		t.Fatalf("got %q %v", v, ok)
	}
	if _, ok := Get(h, "nope"); ok {
		t.Fatal("found a missing cookie")
	}
}

func TestSetCookieName(t *testing.T) {
	tests := map[string]string{
		"_ga=GA1.1; Path=/; Domain=.example.com": "_ga",
		" sid = x":                               "sid",
		"novalue":                                "",
		"; Path=/":                               "",
		"=x":                                     "",
	}
	for in, want := range tests {
		if got := SetCookieName(in); got != want {
			t.Errorf("SetCookieName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzScanner(f *testing.F) {
	f.Add("a=1; b=2")
	f.Add(";;=;")
	f.Add(`x="y"; z`)
	f.Fuzz(func(t *testing.T, h string) {
		n := 0
		for _, p := range collect(h) {
			n++
			if strings.ContainsRune(p.Raw, ';') || p.Raw == "" {
				t.Fatalf("bad pair %+v", p)
			}
			if !strings.Contains(h, p.Raw) {
				t.Fatalf("raw %q not in input", p.Raw)
			}
		}
		if n > strings.Count(h, ";")+1 {
			t.Fatalf("%d pairs from %d separators", n, strings.Count(h, ";"))
		}
		_ = SetCookieName(h)
		_, _ = Get(h, "a")
	})
}
