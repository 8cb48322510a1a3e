"""The seeded chaos soak (issue 17): a plan (`scenario`), real processes carrying it out (`driver`),
and a score of every delivered alert against what really happened (`score`)."""
