//! Processor SDK: serves the HTTP contract and writes outputs, index and receipts.
