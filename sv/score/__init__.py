"""Trial scoring, score normalisation, and verification metrics and results tables."""
