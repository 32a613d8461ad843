package gopanic

import "testing"

func TestNil(t *testing.T) {
	var m map[string]int
	m["a"] = 1
}
