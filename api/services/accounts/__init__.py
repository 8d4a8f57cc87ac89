"""Accounts (auth = 'accounts'): users and their roles, personal API tokens, login throttling, the owner of
what a request creates, and the audit log. No Flask here; api/accounts.py puts it in front of the routes."""
