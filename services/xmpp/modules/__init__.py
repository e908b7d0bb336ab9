"""Broker features, one module each: MUC (XEP-0045), the focus client proxy."""
