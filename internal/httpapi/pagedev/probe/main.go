package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	actx, c1 := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath("chromium"), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir("/tmp/probe-ud"), chromedp.WindowSize(1400, 1000))
	defer c1()
	ctx, c2 := chromedp.NewContext(actx)
	defer c2()
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			fmt.Println("console:", m)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate(os.Args[1])); err != nil {
		panic(err)
	}
	for i := 0; i < 40; i++ {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](os.Args[2]))
		fmt.Println(v, err)
		time.Sleep(100 * time.Millisecond)
	}
}
