package pricing

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Fprint writes c's effective prices to w as a table, one model a line,
// for `sluice prices`. Prices are USD per 1M tokens; DBU entries also show
// their DBU figures.
func Fprint(w io.Writer, c *Catalog) error {
	if _, err := fmt.Fprintf(w, "price catalog %s (USD per 1M tokens; Databricks at $%s per DBU)\n\n",
		c.Version(), Micros(c.DBURate())); err != nil {
		return fmt.Errorf("print prices: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tMODEL\tINPUT\tOUTPUT\tDBU IN\tDBU OUT\tSOURCE\tALIASES")
	for _, e := range c.entries {
		dbuIn, dbuOut := "-", "-"
		if e.DBU {
			dbuIn, dbuOut = formatScaled(e.InputDBUPer1M), formatScaled(e.OutputDBUPer1M)
		}
		aliases := strings.Join(e.Aliases, ",")
		if aliases == "" {
			aliases = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Provider, e.Model,
			Micros(e.Price.InputPer1M), Micros(e.Price.OutputPer1M), dbuIn, dbuOut, e.Price.Source, aliases)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print prices: %w", err)
	}
	return nil
}
