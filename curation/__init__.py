"""Curation: from a video URL or file to pose-tracked, trimmed repetition clips in a project folder."""
