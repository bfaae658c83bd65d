"""The HTTP/1.1 server as a protocol component: in-process, a fake transport and a fake clock."""
