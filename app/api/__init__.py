"""The HTTP surface: problem+json errors, authentication, and the routers' wiring."""
