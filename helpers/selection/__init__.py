"""Which sockets to show: states and ss's filter expressions."""
