"""zerocopy-server: a static file-download server that sends file bytes with sendfile."""

__version__ = "0.1.0"
