"""What a running generation looks like: a widget view in notebooks, text elsewhere. Views
are told events and elapsed time; they know nothing of HTTP or threads."""
