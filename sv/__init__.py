"""sv: speaker verification in the Kaldi/ESPnet recipe style."""
