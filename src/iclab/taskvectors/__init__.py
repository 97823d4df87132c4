"""Task vectors (Hendel, Geva, Globerson 2023): ICL compresses demonstrations into one hidden state."""
