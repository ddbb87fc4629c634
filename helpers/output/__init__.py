"""What the commands print: ss's text, JSON, the summary, nethogs' lines."""
