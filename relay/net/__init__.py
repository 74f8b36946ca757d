"""What every component that talks over the network shares: endpoints, TLS, headers, HTTP and
gRPC clients, and how a component names its authenticator."""
