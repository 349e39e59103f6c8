"""GDPR: data exports (articles 15 and 20), erasure (17), consent records, retention."""
