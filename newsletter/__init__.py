"""Getting content out: Atom publishing, digest selection and rendering, subscribers, delivery, web, scheduler, CLI."""
