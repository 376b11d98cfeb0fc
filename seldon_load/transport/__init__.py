"""The wire: gevent-cooperative OIP clients over REST (HTTP/1.1 keep-alive) and gRPC; ``clients.make_client`` picks one."""
