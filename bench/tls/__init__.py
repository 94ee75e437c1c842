"""The TLS rows of ``bench.proxy``: the certificate both proxies serve, a client that makes a full
handshake per request (``handshakes``), and the rows' table (``report``)."""
