"""What a picture becomes before the encoder: tiles and a global view of a large image (mmv.vision_input.tiles)."""
