"""The card bureau side: personalization job files, encoding cards with a PC/SC and a
serial encoder, and reporting the results to the gateway."""
