"""Finance: the single pot of an ICS, starting with need (weighted capitation)."""
