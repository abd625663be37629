use shared::protocol; #[test] fn placeholder_compiles() { let _ = protocol::PROTOCOL_VERSION; }
