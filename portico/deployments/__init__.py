"""ARM template deployments (`Microsoft.Resources/deployments`): the template language, plans, runs."""
