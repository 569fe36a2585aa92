"""abraxas: the reference family of hera."""
