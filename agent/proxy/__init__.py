"""The forwarding path: client request -> upstream app -> client, streamed both ways."""
