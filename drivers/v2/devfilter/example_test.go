package devfilter_test

import (
	"fmt"

	"github.com/cgsem/cgsem/drivers/v2/devfilter"
	"github.com/cgsem/cgsem/semantic"
)

func ExampleCompile() {
	null, err := semantic.ParseDeviceRule("c 1:3 rwm", true)
	if err != nil {
		panic(err)
	}
	p, err := devfilter.Compile(&semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{null}})
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Len(), "instructions")

	// A rule the next one overrides adds nothing.
	shadowed, _ := semantic.ParseDeviceRule("c 1:3 r", true)
	q, _ := devfilter.Compile(&semantic.Devices{Default: semantic.DenyByDefault, Rules: []semantic.DeviceRule{shadowed, null}})
	fmt.Println(string(p.Bytes()) == string(q.Bytes()))
	// Output:
	// 18 instructions
	// true
}
