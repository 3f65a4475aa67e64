"""Who may do what, and card data at rest: PKI, roles and outlet binding, data keys, PAN
handling, velocity."""
