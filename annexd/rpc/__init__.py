"""The local Unix socket: the wire protocol, the server, and who may ask what."""
