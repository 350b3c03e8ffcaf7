"""What a generation gives back: `ImageResult` (the data), its display, previews, and files
written with their provenance; `ModelList` for the model catalogue."""
