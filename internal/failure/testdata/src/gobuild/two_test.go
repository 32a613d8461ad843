package gobuild

import "testing"

func TestTwo(t *testing.T) {
	if Two() != missing {
		t.Fatal("two")
	}
}
