package gobuild

func Two() int { return 2 }
