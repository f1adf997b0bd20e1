//! Structured JSON logging with redaction of every string field.
