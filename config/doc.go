// Package config defines jumpgate's server configuration file: a plain struct
// decoded from YAML, with defaults documented next to the fields and all
// validation in one place (Validate). It does not read policy (see package
// policy) and does not start anything.
package config
