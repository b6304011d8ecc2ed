"""Accounts app: the tenant (Account), its users, API tokens, the secret vault and authentication."""
