"""Security primitives shared by the services: signed links, credentials, transport settings."""
