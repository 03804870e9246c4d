package accounts

// DummyHash exposes the hash an unknown email is checked against.
func (s *Store) DummyHash() []byte { return s.dummyHash() }
