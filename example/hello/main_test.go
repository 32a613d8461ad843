package main

import "testing"

func TestGreeting(t *testing.T) {
	if got := Greeting("sando"); got != "hello, sando" {
		t.Fatalf("Greeting = %q", got)
	}
}
