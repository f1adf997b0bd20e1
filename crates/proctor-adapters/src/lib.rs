//! Adapters that move run payloads to processors and bring envelopes back.
