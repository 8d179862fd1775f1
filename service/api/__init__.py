"""The published contract: OpenAPI post-processing, shared error responses, pagination."""
