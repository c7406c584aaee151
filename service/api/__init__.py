"""Everything that talks to, or imitates, JD Cloud's product image API."""
