"""What a person sees, without Textual: the pieces the CLI and the wizard's screens share."""
