"""Pages, a module each: auth, projects, annotate, imports, members, people, reports, tokens."""
