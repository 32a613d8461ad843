package sub

import (
	"strings"
	"testing"
)

func TestUpper(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{"a", "A"}, {"b", "X"}} {
		t.Run(tc.in, func(t *testing.T) {
			if got := strings.ToUpper(tc.in); got != tc.want {
				t.Fatalf("ToUpper(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
