"""The stream contract (schema `v: 1`): one module per record, each with its type and its check."""
