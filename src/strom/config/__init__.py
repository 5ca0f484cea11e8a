"""Typed settings for the broker and for topics; every default lives here."""
