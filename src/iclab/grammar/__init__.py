"""Emergent ICL from compositional structure (Hahn & Goyal 2023): grammar, corpus, theory, models."""
