package calc

import "testing"

func TestAdd(t *testing.T) {
	got := Add(1, 2)
	if got != 4 {
		t.Errorf("Add(1, 2) = %d, want 4", got)
	}
}

func TestAddZero(t *testing.T) {
	if Add(0, 0) != 0 {
		t.Fatal("zero")
	}
}
