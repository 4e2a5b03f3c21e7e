package bastion

import "testing"

func TestStartupsLimits(t *testing.T) {
	var s startups
	for i := 0; i < 3; i++ {
		if err := s.begin("10.0.0.1", 5, 3); err != nil {
			t.Fatalf("slot %d: %v", i, err)
		}
	}
	if err := s.begin("10.0.0.1", 5, 3); err != errTooManyFromSource {
		t.Fatalf("4th from one address: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.begin("10.0.0.2", 5, 3); err != nil {
			t.Fatalf("other address: %v", err)
		}
	}
	if err := s.begin("10.0.0.3", 5, 3); err != errTooManyStartups {
		t.Fatalf("over the total: %v", err)
	}
	s.end("10.0.0.1")
	if err := s.begin("10.0.0.3", 5, 3); err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
	for _, ip := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.3"} {
		s.end(ip)
	}
	if s.total != 0 || len(s.by) != 0 {
		t.Fatalf("slots left: %d %v", s.total, s.by)
	}
}
