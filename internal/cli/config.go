package cli

import (
	"bytes"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// configFileVar names a settings file, as --config does.
const configFileVar = "HERALD_CONFIG"

// loadConfigFile reads the settings file of --config (or HERALD_CONFIG), a
// YAML mapping whose keys are the settings' environment variables:
//
//	HERALD_DATABASE_URL: postgres://herald@db:5432/herald
//	HERALD_WORKERS: 4
//
// Its values rank below the environment's and the command line's. A key
// that names no variable of a deployment setting, or a value that is not a
// scalar, is refused with the file and the key named, so that a misspelt
// setting never passes silently.
func (c *cli) loadConfigFile(cmd *cobra.Command) error {
	path := c.s.configFile
	if f := cmd.Flags().Lookup("config"); (f == nil || !f.Changed) && c.env[configFileVar] != "" {
		path = c.env[configFileVar]
	}
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path) //nolint:gosec // the file the operator names with --config or HERALD_CONFIG
	if err != nil {
		return usagef("--config %s: %v", path, err)
	}
	var doc map[string]yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil && err.Error() != "EOF" {
		return usagef("--config %s: not a YAML mapping of settings: %v", path, err)
	}
	known := knownVariables()
	for key, node := range doc {
		if !slices.Contains(known, key) {
			return usagef("--config %s: %q is not a setting; the keys are the variables of the settings (%s)", path, key, strings.Join(known, ", "))
		}
		if node.Kind != yaml.ScalarNode {
			return usagef("--config %s: %s must be a single value", path, key)
		}
		if v := c.env[key]; v == "" { // the environment ranks above the file; an empty variable is unset
			c.env[key] = node.Value
		}
	}
	return nil
}

// knownVariables lists the variables of the deployment settings, sorted.
func knownVariables() []string {
	vars := []string{EnvVar("db"), EnvVar("broker")}
	for flag := range deploymentSettings {
		vars = append(vars, EnvVar(flag))
	}
	slices.Sort(vars)
	return vars
}

// describeConfig is the --config flag's help.
const describeConfig = "a YAML file of settings keyed by their variables (e.g. HERALD_DATABASE_URL: …); " +
	"the environment and flags rank above it"
