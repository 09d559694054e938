"""Unit tests run with sockets disabled (``--disable-socket --allow-unix-socket``) and never load weights."""
