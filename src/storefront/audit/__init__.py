"""The audit log's HTTP face: a shop's entries for its owners, every entry for admins."""
